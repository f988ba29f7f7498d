process EVOSCAN_WINDOWS {
    tag "${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), path(sequences), path(gtf)

    output:
    tuple val(meta), path("${meta.id}.windows.h5"), emit: windows
    tuple val("${task.process}"), val("evoscan"), eval("evoscan --version | cut -d\" \" -f2"), topic: versions

    script:
    def args = task.ext.args ?: ''
    // a loci FASTA (GTF optional, for region classes) or a genome with a GTF and gene names
    def source = meta.genes ? "--genome ${sequences} --gtf ${gtf} --genes ${meta.genes}" : "--fasta ${sequences}" + (gtf ? " --gtf ${gtf}" : '')
    """
    evoscan windows ${source} ${args} -o ${meta.id}.windows.h5
    """

    stub:
    """
    touch ${meta.id}.windows.h5
    """
}
