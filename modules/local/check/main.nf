process EVOSCAN_CHECK {
    tag "${meta.id}"
    label 'process_medium'

    input:
    tuple val(meta), path(windows), path(masks), path(neighbours), path(families), path(motifs)

    output:
    tuple val(meta), path("${meta.id}.scores.h5"), emit: scores
    tuple val("${task.process}"), val("evoscan"), eval("evoscan --version | cut -d\" \" -f2"), emit: versions

    script:
    def args = task.ext.args ?: ''
    def family_table = families ? "--families ${families}" : ''
    def motif_file = motifs ? "--motifs ${motifs}" : ''  // else the release named in ext.args
    // a retry (after a kill for time or memory) continues from the blocks its attempt before kept
    def kept = task.attempt > 1 && task.previousTrace ? "${task.previousTrace.workdir}/${meta.id}.scores.h5.partial" : ''
    """
    ${kept ? "if [ -d '${kept}' ]; then mv '${kept}' .; fi" : ''}
    evoscan check --windows ${windows} --masks ${masks} --neighbours ${neighbours} --threads ${task.cpus} ${family_table} ${motif_file} ${args} -o ${meta.id}.scores.h5
    """

    stub:
    """
    touch ${meta.id}.scores.h5
    """
}
