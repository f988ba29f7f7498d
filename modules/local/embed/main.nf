process EVOSCAN_EMBED {
    tag "${meta.id} ${chunk}/${chunks}"
    label 'process_gpu'  // conf/base.config asks for a GPU only when the backend needs one

    input:
    tuple val(meta), path(windows), val(chunk), val(chunks)

    output:
    tuple val(meta), path("${meta.id}.embeddings.${chunk}.h5"), emit: embeddings
    tuple val("${task.process}"), val("evoscan"), eval("evoscan --version | cut -d\" \" -f2"), topic: versions

    script:
    def args = task.ext.args ?: ''
    """
    evoscan embed --windows ${windows} --chunk ${chunk}/${chunks} ${args} -o ${meta.id}.embeddings.${chunk}.h5
    """

    stub:
    """
    touch ${meta.id}.embeddings.${chunk}.h5
    """
}
